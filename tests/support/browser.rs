//! Real headless Chromium, driven over WebDriver by `chromedriver`, for the
//! web UI's end-to-end tests. Both come from Debian (`chromium`,
//! `chromium-driver`); `.ci/run` installs them.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::TempDir;

/// What the page's header shows only to a signed-in user: the navigation,
/// who they are, and Sign out.
pub const SIGNED_IN_HEADER: [&str; 4] = ["#nav", "#who", "#who-name", "#sign-out"];

/// Seconds to wait for the sign-in form: the page's first load fetches
/// and runs every module, which takes longest when CI runs every server
/// test at once on two cores. A wait ends as soon as the form is there.
const SIGN_IN_WAIT: u64 = 30;

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
    /// Held while this browser lives (dropped after `Drop` kills it).
    _turn: tokio::sync::OwnedSemaphorePermit,
}

/// Browsers alive at once in one test process. Eight Chromiums beside the
/// rest of a parallel test run on two cores starved page loads: a page
/// whose modules never ran in 30 s (its icon's request failed), seen in CI.
static BROWSERS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(2)));

fn find(program: &str, env: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    // Debian's /usr/bin/chromium is a shell wrapper; the browser itself
    // sits in /usr/lib/chromium.
    for dir in ["/usr/lib/chromium", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("`{program}` not found (apt install chromium chromium-driver, or set {env})");
}

impl Browser {
    /// A fresh browser (empty profile, so no session storage carries over)
    /// with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let turn = BROWSERS
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // Its own process group, which the browser it starts joins: a
        // test that fails before `close` still stops the whole browser.
        let driver = Command::new(find("chromedriver", "CHROMEDRIVER"))
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new("chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": find("chromium", "CHROMIUM").to_string_lossy(),
                "args": [
                    "--headless=new",
                    // CI runs as root in a container: no user namespaces.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-crash-reporter",
                    "--disable-breakpad",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": profile.path().join("downloads").to_string_lossy(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session with chromium");
        Browser {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Where the browser saves downloads.
    pub fn downloads(&self) -> PathBuf {
        self._profile.path().join("downloads")
    }

    /// Waits until the browser has saved `name` with exactly `contents`.
    pub async fn wait_download(&self, name: &str, contents: &str) {
        let saved = self.downloads().join(name);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&saved).ok().as_deref() != Some(contents) {
            assert!(
                Instant::now() < deadline,
                "no download of {contents:?} at {}",
                saved.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body; `arguments` as in WebDriver).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something truthy; panics with
    /// `what` (and a screenshot on disk) after `secs`.
    pub async fn wait(&self, what: &str, secs: u64, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // A page still drawing may not have the element yet.
            let v = self
                .js(
                    &format!("try {{ {script} }} catch (e) {{ return null; }}"),
                    vec![],
                )
                .await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self
                    .screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                let text = self.js("return document.body.innerText", vec![]).await;
                panic!("timed out waiting for {what} (screenshot {shot:?}); page text:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Browser::wait`] for a script that returns a string once ready.
    pub async fn wait_text(&self, what: &str, secs: u64, script: &str) -> String {
        match self.wait(what, secs, script).await {
            Value::String(s) => s,
            other => panic!("{what}: expected a string, got {other}"),
        }
    }

    /// Fails if a control, image or focusable element on the page has no
    /// accessible name (no label, text, aria-label or alt): what a screen
    /// reader would announce as just "button" or "edit text".
    pub async fn assert_named(&self, page: &str) {
        let nameless = self
            .js(
                "const named = el => (el.labels && el.labels.length > 0)
                   || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                   || el.getAttribute('alt') !== null || el.getAttribute('title')
                   || (el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim();
                 return [...document.querySelectorAll(
                   'input, select, textarea, button, a[href], img, [tabindex]:not([tabindex=\"-1\"]), [role=button]')]
                   .filter(el => !el.closest('[hidden]') && !named(el))
                   .map(el => el.outerHTML.slice(0, 120));",
                vec![],
            )
            .await;
        assert_eq!(
            nameless,
            json!([]),
            "{page}: elements without an accessible name"
        );
    }

    /// Fails if the page is wider than the window (something long that
    /// does not wrap makes the whole page scroll sideways).
    pub async fn assert_fits(&self, page: &str) {
        let overflow = self
            .js(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await;
        assert!(
            overflow.as_i64().unwrap_or(i64::MAX) <= 0,
            "{page} is wider than the window by {overflow}px"
        );
    }

    /// The checks every page gets (accessible names, fits its window),
    /// then its screenshot under `name`.
    pub async fn inspect(&self, name: &str) {
        self.assert_named(name).await;
        self.assert_fits(name).await;
        self.screenshot(name).await;
    }

    /// Marks the loaded document; [`Browser::assert_same_document`] then
    /// tells whether the page changed in place or was reloaded.
    pub async fn mark_document(&self) {
        self.js("window.__slipwayMark = true", vec![]).await;
    }

    pub async fn assert_same_document(&self, page: &str) {
        let same = self
            .js("return window.__slipwayMark === true", vec![])
            .await;
        assert_eq!(
            same,
            json!(true),
            "{page} reloaded instead of updating live"
        );
    }

    /// Clicks the first match of `css`; a live page may redraw the element
    /// between finding and clicking it, so that is tried again.
    pub async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let result = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.click().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e) if tries < 5 && e.to_string().contains("stale element") => tries += 1,
                Err(e) => panic!("click `{css}`: {e}"),
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Whether the first match of `css` is drawn where a user sees it:
    /// WebDriver's "displayed" (not `display: none` or `visibility: hidden`,
    /// itself or through an ancestor, not transparent) and a box of some
    /// size. An element can be in the page, even carry `hidden`, and still
    /// be drawn if a style overrides that; checking it exists cannot tell.
    /// Panics if there is no such element.
    pub async fn is_displayed(&self, css: &str) -> bool {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        let displayed = el
            .is_displayed()
            .await
            .unwrap_or_else(|e| panic!("is `{css}` displayed: {e}"));
        let (_, _, width, height) = el
            .rectangle()
            .await
            .unwrap_or_else(|e| panic!("the box of `{css}`: {e}"));
        displayed && width > 0.0 && height > 0.0
    }

    /// Fails (with a screenshot) unless every one of `selectors` is
    /// displayed, if `shown`, or none is; `when` says at what point.
    pub async fn assert_displayed(&self, when: &str, shown: bool, selectors: &[&str]) {
        let mut wrong = Vec::new();
        for css in selectors {
            if self.is_displayed(css).await != shown {
                wrong.push(*css);
            }
        }
        if !wrong.is_empty() {
            let shot = self
                .screenshot(&format!("not-as-expected-{}", when.replace(' ', "-")))
                .await;
            panic!(
                "{when}: {wrong:?} should {}be displayed (screenshot {shot:?})",
                if shown { "" } else { "not " }
            );
        }
    }

    /// Signs in on the page at `base` with `token`, and waits for the runs
    /// page. The signed-in header is drawn only once signed in.
    /// Waits until the sign-in form is on the page.
    pub async fn wait_sign_in_form(&self) {
        self.wait(
            "the sign-in form",
            SIGN_IN_WAIT,
            "return document.getElementById('token')",
        )
        .await;
    }

    pub async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/#/runs")).await;
        self.wait_sign_in_form().await;
        self.assert_displayed("before sign-in", false, &SIGNED_IN_HEADER)
            .await;
        self.type_into("#token", token).await;
        self.click("form.signin button[type=submit]").await;
        self.wait(
            "the runs page",
            10,
            "return document.getElementById('runs')",
        )
        .await;
        self.assert_displayed("after sign-in", true, &SIGNED_IN_HEADER)
            .await;
    }

    /// Signs the current user out, `token`'s user in, and opens `page`
    /// (a `#/...` address) on the server at `base`.
    pub async fn switch_user(&self, base: &str, token: &str, page: &str) {
        self.sign_out().await;
        self.sign_in(base, token).await;
        self.goto(&format!("{base}/{page}")).await;
    }

    pub async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.wait_sign_in_form().await;
        self.assert_displayed("after sign-out", false, &SIGNED_IN_HEADER)
            .await;
    }

    /// Saves a PNG of the window under `target/ui-screenshots/` (kept by CI
    /// as test artifacts) and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("ui-screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                let _ = std::fs::write(&path, png);
            }
            Err(e) => eprintln!("screenshot {name}: {e}"),
        }
        path
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops what is left.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every browser process it started share its
        // process group; kill them all, also when a test panicked.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
