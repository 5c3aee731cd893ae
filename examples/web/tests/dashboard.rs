//! The dashboard in a real browser: headless Chromium, driven through chromedriver (W3C
//! WebDriver: a handful of JSON requests, sent with awc), against the running web example. It
//! checks what a person would see: the right number of workers, a failure pushed through a pool
//! with its text, an error text holding `<script>` shown as text and not run, a resize refused
//! while actions are off; and it writes a screenshot (over the README's `docs/dashboard.png` with
//! `CIRCUITS_UPDATE_SCREENSHOT=1`).
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test says so and passes,
//! unless `CIRCUITS_REQUIRE_BROWSER=1` (as `.ci/run` sets), where it fails.

mod support;
use support::start;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// How long any one condition may take to hold on the page.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long Chromium may take to start. Its first start on a fresh machine (right after
/// `apt-get install`) builds its profile and caches, and a session is tried again when it fails.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How many times a session is tried before the test fails, naming every reason.
const START_TRIES: usize = 3;

/// chromedriver and the browser session it started, ended (by the driver's pid) when dropped.
struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    client: awc::Client,
    /// chromedriver's log (Chromium's start and its errors), shown when the test fails.
    log: std::path::PathBuf,
}

/// The first of `names` found on the `PATH`.
fn on_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver on a free loopback port (it picks one: `--port=0`) and a headless
    /// Chromium session; `None` when either is not installed.
    async fn start() -> Option<Browser> {
        let driver = on_path(&["chromedriver"]);
        let chromium = on_path(&["chromium", "chromium-browser"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let required = std::env::var("CIRCUITS_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "CIRCUITS_REQUIRE_BROWSER=1 but chromium or chromedriver is not on the PATH \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: the dashboard's browser test needs chromium and chromedriver \
                 (apt-get install chromium chromium-driver); set CIRCUITS_REQUIRE_BROWSER=1 \
                 to make their absence a failure"
            );
            return None;
        };
        let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chromedriver.log");
        let mut child = Command::new(driver)
            .arg("--port=0") // loopback only, its default
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // "ChromeDriver was started successfully on port N."
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                let rest = l.split("started successfully on port ").nth(1)?;
                rest.trim_end_matches('.').parse::<u16>().ok()
            })
            .expect("chromedriver says its port");
        // Keep reading its output, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let client = awc::Client::builder().timeout(DEADLINE).finish();
        let mut browser = Browser {
            driver: child,
            session: String::new(),
            client,
            log,
        };
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // Root in a container has no user namespace for the sandbox.
                // No first-run work, and nothing that reaches for a network the test has not.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         "--window-size=1360,860", "--force-device-scale-factor=1",
                         "--no-first-run", "--no-default-browser-check",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync"],
            },
        }}});
        let url = format!("http://127.0.0.1:{port}/session");
        let starting = awc::Client::builder().timeout(START_DEADLINE).finish();
        let mut failures = Vec::new();
        while failures.len() < START_TRIES {
            let created = Browser::send(&starting, "POST", &url, Some(capabilities.clone())).await;
            match created.map(|v| v["sessionId"].as_str().map(str::to_owned).ok_or(v)) {
                Ok(Ok(id)) => {
                    browser.session = format!("{url}/{id}");
                    return Some(browser);
                }
                Ok(Err(answer)) => failures.push(format!("no session id in {answer}")),
                Err(e) => failures.push(e),
            }
            eprintln!("Chromium did not start: {}", failures.last().unwrap());
        }
        panic!(
            "Chromium did not start in {START_TRIES} tries: {failures:#?}\n{}",
            browser.log_tail()
        );
    }

    /// One WebDriver command sent with `client`; its `value`, or what went wrong.
    async fn send(
        client: &awc::Client,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let req = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        let mut answer = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .map_err(|e| format!("{method} {url}: {e}"))?;
        let body: Value = answer
            .json()
            .limit(64 << 20)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("{method} {url}: {} {body}", answer.status()));
        }
        Ok(body["value"].clone())
    }

    /// One WebDriver command; its `value`. Fails the test when the driver does.
    async fn request(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        Browser::send(&self.client, method, url, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The end of chromedriver's log, to read beside a failure.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("the end of {}:\n{tail}", self.log.display())
    }

    async fn go(&self, url: &str) {
        let to = format!("{}/url", self.session);
        self.request("POST", &to, Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    async fn eval(&self, script: &str) -> Value {
        let to = format!("{}/execute/sync", self.session);
        let body = json!({ "script": script, "args": [] });
        self.request("POST", &to, Some(body)).await
    }

    /// Runs `script` in the page until it returns something other than `null` or `false`, and
    /// returns that; fails the test past the deadline, saying `what`.
    async fn until(&self, what: &str, script: &str) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let v = self.eval(script).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(Instant::now() < end, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        let to = format!("{}/screenshot", self.session);
        let png = self.request("GET", &to, None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 text"))
            .expect("a base64 PNG")
    }
}

/// Whether `answer` holds a whole HTTP response: its head and as many body bytes as its
/// `Content-Length` says (chromedriver answers `Connection: close` but keeps the connection open).
fn whole_response(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    answer.len() >= end + 4 + length
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // Ending the session closes Chromium; then the driver goes, by its pid.
        if let Some((addr, path)) = self
            .session
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
        {
            // A plain blocking request: this runs wherever the test ended, runtime or not. The
            // answer comes once Chromium has quit.
            if let Ok(mut conn) = std::net::TcpStream::connect(addr) {
                let _ = conn.set_read_timeout(Some(DEADLINE));
                let _ = write!(
                    conn,
                    "DELETE /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                );
                let (mut answer, mut chunk) = (Vec::new(), [0; 4096]);
                while let Ok(n @ 1..) = conn.read(&mut chunk) {
                    answer.extend_from_slice(&chunk[..n]);
                    if whole_response(&answer) {
                        break;
                    }
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The rows of a pool's workers table.
fn workers(pool: &str) -> String {
    format!(
        "const c = document.querySelector('section.pool[data-pool=\"{pool}\"]');
         return c ? c.querySelectorAll('tbody.workers tr').length : null;"
    )
}

#[actix_rt::test]
async fn the_dashboard_shows_the_pools_live_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return; // skipped, and said so (see Browser::start)
    };
    let server = start(&[]);
    let client = awc::Client::builder().timeout(DEADLINE).finish();
    let url = |path: &str| format!("{}{path}", server.base);

    // Some work first, so the charts have something to show.
    for i in 0..6 {
        let hash = client
            .post(url("/hash?rounds=200000"))
            .send_body(format!("data {i}"));
        assert_eq!(hash.await.unwrap().status(), 200);
        let primes = client.get(url(&format!("/primes?limit={}", 200_000 * (i + 1))));
        assert_eq!(primes.send().await.unwrap().status(), 200);
    }

    browser.go(&url("/circuits")).await; // redirected to /circuits/
    browser
        .until(
            "the live stream",
            "return document.getElementById('status').dataset.state === 'live';",
        )
        .await;
    let title = browser.eval("return document.title;").await;
    assert_eq!(title, "circuits: pools");

    // The right number of workers: two per pool, as the example starts them.
    assert_eq!(
        browser
            .until("the thread pool's workers", &workers("threads"))
            .await,
        2
    );
    assert_eq!(
        browser
            .until("the process pool's workers", &workers("processes"))
            .await,
        2
    );
    // Each process worker's pid, once its child has started (a row shows while it starts).
    let pids = browser
        .until(
            "the process workers' pids",
            "const p = [...document.querySelectorAll('section.pool[data-pool=\"processes\"] td.pid')]
                 .map(td => td.textContent);
             return p.length === 2 && p.every(t => t !== '') ? p.map(Number) : null;",
        )
        .await;
    assert!(
        pids.as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p.as_u64() > Some(1))),
        "process workers show their pids: {pids}"
    );
    let shown = browser
        .until(
            "the thread pool's total of workers",
            "const t = document.querySelector('section.pool[data-pool=\"threads\"] [data-total=\"workers\"]');
             return t && t.textContent !== '\\u2013' ? t.textContent : null;",
        )
        .await;
    assert_eq!(shown, "2");

    // A failure pushed through a pool appears, with its text.
    assert_eq!(
        client.post(url("/crash")).send().await.unwrap().status(),
        500
    );
    let crash = browser
        .until(
            "the crash among the process pool's failures",
            "const e = document.querySelector('section.pool[data-pool=\"processes\"] .failures .error');
             return e && e.textContent.includes('died') ? e.textContent : null;",
        )
        .await;
    assert!(
        crash.as_str().unwrap().contains("worker process"),
        "{crash}"
    );

    // An error text with markup in it: shown as text, never run.
    let evil = "1, <script>document.title='pwned'</script><img src=x onerror=\"window.pwned=1\">";
    let r = client.post(url("/sum")).send_body(evil).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = browser
        .until(
            "the error text among the thread pool's failures",
            "const e = document.querySelector('section.pool[data-pool=\"threads\"] .failures .error');
             return e && e.textContent.includes('<script>') ? e.textContent : null;",
        )
        .await;
    assert!(
        text.as_str().unwrap().contains(
            "`<script>document.title='pwned'</script><img src=x onerror=\"window.pwned=1\">` is not a number"
        ),
        "{text}"
    );
    let after = browser
        .eval(
            "const e = document.querySelector('section.pool[data-pool=\"threads\"] .failures .error');
             return { title: document.title, pwned: typeof window.pwned,
                      elements: e.childElementCount, scripts: document.scripts.length,
                      images: document.images.length };",
        )
        .await;
    assert_eq!(
        after,
        json!({ "title": "circuits: pools", "pwned": "undefined", "elements": 0,
                "scripts": 1, "images": 0 }),
        "the error text ran or became markup"
    );

    // Actions are off: the page offers none, and a resize POSTed anyway is refused.
    let buttons = browser
        .eval(
            "const b = [...document.querySelectorAll('button[data-action]')];
             return { all: b.length, enabled: b.filter(x => !x.disabled).length };",
        )
        .await;
    assert_eq!(buttons["enabled"], 0, "{buttons}");
    assert!(buttons["all"].as_u64() >= Some(6), "{buttons}");
    let status = browser
        .eval(
            "const x = new XMLHttpRequest();
             x.open('POST', 'pools/0/resize?workers=3', false);
             x.setRequestHeader('x-circuits-action', '1');
             x.send();
             return x.status;",
        )
        .await;
    assert_eq!(status, 403, "a resize from the page");
    let direct = client
        .post(url("/circuits/pools/0/resize?workers=3"))
        .insert_header(("x-circuits-action", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 403, "a resize from outside the page");
    assert_eq!(
        browser
            .until("two workers still", &workers("threads"))
            .await,
        2
    );

    // The README's screenshot, once the charts have a few points of steady work (a bounded
    // stream of requests in the background while the page is watched).
    let load = {
        let (client, base) = (client.clone(), server.base.clone());
        actix_rt::spawn(async move {
            for i in 0..2_000u32 {
                let hash = client
                    .post(format!("{base}/hash?rounds={}", 20_000 + (i % 7) * 15_000))
                    .send_body(format!("load {i}"));
                let primes = client.get(format!(
                    "{base}/primes?limit={}",
                    100_000 + (i % 5) * 300_000
                ));
                let _ = futures::future::join(hash, primes.send()).await;
            }
        })
    };
    browser
        .until(
            "a few samples in the charts",
            "const chart = 'section.pool[data-pool=\"threads\"] svg[data-chart=\"latency\"]';
             const lines = [...document.querySelectorAll(chart + ' polyline.s0')];
             return lines.reduce((n, l) => n + l.getAttribute('points').split(' ').length, 0) >= 8;",
        )
        .await;
    load.abort();
    let png = browser.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // Into the build's scratch directory, or over the README's picture when asked
    // (`CIRCUITS_UPDATE_SCREENSHOT=1`): a test run leaves the checkout as it was.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = if std::env::var("CIRCUITS_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        root.join("docs/dashboard.png")
    } else {
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
    };
    std::fs::write(&path, &png).expect("the screenshot is written");
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);
}
