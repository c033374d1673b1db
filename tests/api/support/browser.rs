//! A real browser for the portal's tests: Debian's `chromium`, driven
//! through `chromedriver` with plain W3C WebDriver calls over reqwest (a
//! dozen endpoints; no client crate needed). One chromedriver per test
//! binary, on a port it chooses; one headless browser session per test,
//! with its own profile folder.
//!
//! Without chromedriver the browser tests are skipped, said once in one
//! loud line; with `SIGNPOST_REQUIRE_BROWSER=1` (CI) that is a failure.
//! Every page a test visits can be checked with axe-core
//! (`tests/browser/axe.min.js`, injected into the page): zero violations
//! of WCAG 2.0, 2.1 and 2.2 A and AA. When a test fails, the page its
//! browser shows is saved to `target/browser-screenshots/`.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{LazyLock, Mutex},
    time::Duration,
};

use base64::Engine as _;
use serde_json::{Value, json};

use super::helpers::MANIFEST_DIR;

/// The WCAG tags axe checks.
const AXE_TAGS: &[&str] = &["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// The chromedriver this test binary shares, if there is one.
struct Driver {
    url: String,
    /// Its wrapper shell ends chromedriver when this pipe closes, i.e.
    /// when the test binary exits, however it exits.
    _lifeline: Mutex<ChildStdin>,
    _wrapper: Mutex<Child>,
}

fn find(env: &str, defaults: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    defaults
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let name = PathBuf::from(defaults.first()?).file_name()?.to_owned();
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(&name))
                    .find(|p| p.exists())
            })
        })
}

fn chromium() -> Option<PathBuf> {
    find(
        "SIGNPOST_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )
}

static DRIVER: LazyLock<Option<Driver>> = LazyLock::new(|| {
    let required = std::env::var("SIGNPOST_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let missing = |what: String| {
        if required {
            panic!("SIGNPOST_REQUIRE_BROWSER=1 but {what}");
        }
        eprintln!(
            "BROWSER TESTS SKIPPED: {what} (install Debian's chromium and chromium-driver; CI sets SIGNPOST_REQUIRE_BROWSER=1)"
        );
        None
    };
    let Some(chromedriver) = find("SIGNPOST_CHROMEDRIVER", &["/usr/bin/chromedriver"]) else {
        return missing("no chromedriver was found".into());
    };
    if chromium().is_none() {
        return missing("no chromium was found".into());
    }
    // `sh` starts chromedriver, then waits for its stdin to close and
    // stops it: no chromedriver outlives the tests.
    let mut wrapper = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" --port=0 & pid=$!; cat >/dev/null; kill $pid")
        .arg(&chromedriver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let lifeline = wrapper.stdin.take().expect("piped stdin");
    let stdout = wrapper.stdout.take().expect("piped stdout");
    // "ChromeDriver was started successfully on port 38387."
    let mut port = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
            if port.is_some() {
                break;
            }
        }
    }
    let Some(port) = port else {
        let _ = wrapper.kill();
        let _ = wrapper.wait();
        return missing(format!("{} did not start", chromedriver.display()));
    };
    Some(Driver {
        url: format!("http://127.0.0.1:{port}"),
        _lifeline: Mutex::new(lifeline),
        _wrapper: Mutex::new(wrapper),
    })
});

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    /// The test's name, for screenshots.
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new headless browser, or `None` when browser tests are skipped.
    pub async fn start(name: &str) -> Option<Browser> {
        let driver = DRIVER.as_ref()?;
        let profile = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let answer: Value = http
            .post(format!("{}/session", driver.url))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium().unwrap().display().to_string(),
                    "args": args,
                },
                "timeouts": {"script": 30000, "pageLoad": 30000, "implicit": 0},
            }}}))
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Some(Browser {
            http,
            session,
            name: name.to_owned(),
            _profile: profile,
        })
    }

    fn url(&self, path: &str) -> String {
        let driver = DRIVER.as_ref().expect("a driver");
        format!("{}/session/{}{path}", driver.url, self.session)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Open a URL and wait for it to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Run a script in the page; its return value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.script("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn element(&self, xpath: &str) -> Option<String> {
        let found = self
            .post("/elements", json!({"using": "xpath", "value": xpath}))
            .await;
        found
            .as_array()?
            .first()
            .and_then(|e| e.as_object()?.values().next()?.as_str().map(str::to_owned))
    }

    /// Type into the field whose label is exactly `label` (as a screen
    /// reader finds it), after clearing it.
    pub async fn fill(&self, label: &str, text: &str) {
        let xpath = format!("//*[@id=//label[normalize-space()='{label}']/@for]");
        let id = self
            .element(&xpath)
            .await
            .unwrap_or_else(|| panic!("no field labelled {label:?}"));
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text}))
            .await;
    }

    /// Choose the radio (or tick the box) labelled `label`.
    pub async fn choose(&self, label: &str) {
        let xpath = format!("//label[normalize-space()='{label}']");
        let id = self
            .element(&xpath)
            .await
            .unwrap_or_else(|| panic!("no option labelled {label:?}"));
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Whether a button with exactly this text is on the page.
    pub async fn has_button(&self, text: &str) -> bool {
        self.element(&format!("//button[normalize-space()='{text}']"))
            .await
            .is_some()
    }

    /// Press the button whose text is exactly `text`, and wait for the
    /// page it leads to (every button of the portal submits a form).
    pub async fn press(&self, text: &str) {
        let id = self
            .element(&format!("//button[normalize-space()='{text}']"))
            .await
            .unwrap_or_else(|| panic!("no button {text:?}"));
        // Mark this document: the next one will not have the mark.
        self.script("window.__signpost_leaving = true", json!([]))
            .await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
        for _ in 0..1000 {
            let arrived = self
                .script(
                    "return window.__signpost_leaving === undefined && document.readyState === 'complete'",
                    json!([]),
                )
                .await;
            if arrived == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("pressing {text:?} led to no new page");
    }

    /// The text of the element with this id.
    pub async fn text_of(&self, id: &str) -> String {
        self.script(
            "const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
            json!([id]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Set the window's size (e.g. a phone's width).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The elements wider than the window (sideways scrolling), if any,
    /// as `tag.class` names; empty when the page fits.
    pub async fn too_wide(&self) -> Vec<String> {
        let found = self
            .script(
                "if (document.documentElement.scrollWidth <= window.innerWidth) return [];\
                 return [...document.querySelectorAll('body *')]\
                   .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)\
                   .map(e => e.tagName.toLowerCase() + '.' + [...e.classList].join('.'));",
                json!([]),
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Run axe-core on the page: panics, listing them, on any WCAG 2.2 AA
    /// violation.
    pub async fn assert_accessible(&self) {
        static AXE: LazyLock<String> = LazyLock::new(|| {
            std::fs::read_to_string(format!("{MANIFEST_DIR}/tests/browser/axe.min.js"))
                .expect("tests/browser/axe.min.js")
        });
        let loaded = self
            .script("return typeof axe !== 'undefined'", json!([]))
            .await;
        if loaded != json!(true) {
            self.script(&format!("{}\n;return true;", *AXE), json!([]))
                .await;
        }
        let result = self
            .post(
                "/execute/async",
                json!({
                    "script": "const done = arguments[arguments.length - 1];\
                        axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})\
                          .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))))\
                          .catch(e => done('axe failed: ' + e));",
                    "args": [AXE_TAGS],
                }),
            )
            .await;
        let title = self.title().await;
        assert!(
            result.as_array().is_some_and(Vec::is_empty),
            "accessibility violations on {title:?}: {result:#}"
        );
    }
}

impl Drop for Browser {
    /// End the session (closing the browser); first, if the test is
    /// failing, save what the page shows.
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let http = self.http.clone();
        let session = self.url("");
        let name = self.name.clone();
        // (No async in drop: a thread with its own small runtime.)
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if failing
                    && let Ok(answer) = http.get(format!("{session}/screenshot")).send().await
                    && let Ok(value) = answer.json::<Value>().await
                {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(value["value"].as_str().unwrap_or_default())
                        .unwrap_or_default();
                    let dir = PathBuf::from(MANIFEST_DIR).join("target/browser-screenshots");
                    std::fs::create_dir_all(&dir).ok();
                    let path = dir.join(format!("{name}-failure.png"));
                    if std::fs::write(&path, bytes).is_ok() {
                        eprintln!("screenshot of the failing page: {}", path.display());
                    }
                }
                let _ = http.delete(session).send().await;
            });
        })
        .join();
    }
}
