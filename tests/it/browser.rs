//! End to end in headless Chromium, driven through chromedriver's WebDriver
//! protocol on loopback: log in, filter Mail history by a part of an
//! account name and a plain date, sort it by score and see the reject
//! line, open a report from its score and see the matched keyword, mark it
//! as ham for the classifier, follow Mail abuse from a block to its report,
//! see the accounts in prison or over the daily limit, unblock (a reload
//! posts nothing again), find Unblock disabled with its reason after a
//! relapse and Lift instead, and suspend a mailbox from Accounts.
//! Screenshots of each page go to `<target>/tmp/browser-screenshots/`.
//!
//! Without chromedriver the test says so and does not run, unless
//! `OUTSCORE_REQUIRE_BROWSER=1` (as `scripts/test` sets), which makes it fail.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::store::*;
use base64::Engine as _;
use chrono::Utc;
use outscore::http::auth::{hash_secret, UserRecord};
use outscore::http::{db, serve_on, AppState, Role};
use outscore::scoring::SymbolResult;
use outscore::store::{AccountChange, AccountStatus, AccountStore, AuditLog, ReportStore, Store};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Ends the browser session and kills chromedriver when the test ends,
/// even on a failed assertion (Chromium outlives a killed chromedriver).
struct Driver {
    child: Child,
    addr: SocketAddr,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            use std::io::Read;
            let timeout = Some(Duration::from_secs(10));
            if let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            {
                let _ = s.set_read_timeout(timeout);
                let _ = s.set_write_timeout(timeout);
                let req = format!(
                    "DELETE /session/{session} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                    self.addr
                );
                let _ = s.write_all(req.as_bytes());
                let _ = s.read(&mut [0u8; 1024]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command over a fresh HTTP/1.1 connection.
async fn wd(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        // chromedriver keeps the connection open: read the head, then
        // exactly Content-Length bytes (or to the end when it is absent).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|len| buf.len() >= end + 4 + len) {
                    break;
                }
            }
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .unwrap_or_else(|_| panic!("WebDriver {method} {path}: no answer in 60 s"))
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
    let text = String::from_utf8_lossy(&buf);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    let value: Value = serde_json::from_str(&payload)
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: bad JSON ({e}): {payload}"));
    if !head.starts_with("HTTP/1.1 200") {
        panic!("WebDriver {method} {path} failed: {head}\n{value}");
    }
    value["value"].clone()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, rest)) = s.split_once("\r\n") else {
            break;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

struct Browser {
    driver: Driver,
    session: String,
    base: String,
    shots: PathBuf,
}

impl Browser {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn go(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        wd(
            self.driver.addr,
            "POST",
            &self.path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = wd(
            self.driver.addr,
            "POST",
            &self.path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn count(&self, css: &str) -> usize {
        let v = wd(
            self.driver.addr,
            "POST",
            &self.path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Wait (at most 15 s) until `css` matches, e.g. after a click that
    /// navigates.
    async fn wait_for(&self, css: &str) {
        for _ in 0..150 {
            if self.count(css).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never appeared (at {})", self.url().await);
    }

    /// Wait (at most 15 s) until the address contains `part`, e.g. after
    /// a form is submitted to the page already shown.
    async fn wait_url(&self, part: &str) {
        for _ in 0..150 {
            if self.url().await.contains(part) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the address never contained {part} (at {})",
            self.url().await
        );
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = wd(
            self.driver.addr,
            "GET",
            &self.path(&format!("/element/{e}/text")),
            None,
        )
        .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        wd(
            self.driver.addr,
            "POST",
            &self.path(&format!("/element/{e}/clear")),
            Some(json!({})),
        )
        .await;
        wd(
            self.driver.addr,
            "POST",
            &self.path(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        wd(
            self.driver.addr,
            "POST",
            &self.path(&format!("/element/{e}/click")),
            Some(json!({})),
        )
        .await;
    }

    async fn refresh(&self) {
        wd(
            self.driver.addr,
            "POST",
            &self.path("/refresh"),
            Some(json!({})),
        )
        .await;
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css).await;
        let v = wd(
            self.driver.addr,
            "GET",
            &self.path(&format!("/element/{e}/attribute/{name}")),
            None,
        )
        .await;
        v.as_str().map(str::to_string)
    }

    async fn url(&self) -> String {
        wd(self.driver.addr, "GET", &self.path("/url"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn screenshot(&self, name: &str) {
        let v = wd(self.driver.addr, "GET", &self.path("/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(
            png.starts_with(b"\x89PNG"),
            "screenshot {name} is not a PNG"
        );
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn quit(mut self) {
        wd(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
        self.driver.session = None;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start chromedriver and open a headless Chromium session, or `None` when
/// chromedriver is not installed (and not required).
async fn browser(base: String, profile: &Path) -> Option<Browser> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        if std::env::var("OUTSCORE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("{CHROMEDRIVER} and {CHROMIUM} are required (OUTSCORE_REQUIRE_BROWSER=1); run scripts/setup");
        }
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {CHROMEDRIVER} or {CHROMIUM} is missing: the headless Chromium test did NOT run (scripts/setup installs them)."
        );
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut driver = Driver {
        child,
        addr,
        session: None,
    };
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "chromedriver did not listen on {addr} within 10 s");
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    }}});
    let v = wd(addr, "POST", "/session", Some(caps)).await;
    let session = v["sessionId"].as_str().expect("session id").to_string();
    driver.session = Some(session.clone());
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    Some(Browser {
        driver,
        session,
        base,
        shots,
    })
}

async fn suspend(store: &Store, account: &str, report_id: &str) {
    store
        .set_account_state(&AccountChange {
            account: account.into(),
            status: AccountStatus::Suspended,
            // Past the tier's complaint period.
            at: Utc::now() - chrono::Duration::days(2),
            tier: Some("L-SPAM20".into()),
            report_id: Some(report_id.into()),
            reason: Some("L-SPAM20: keyword spam run".into()),
        })
        .await
        .unwrap();
}

/// A volume-limit entry in the audit log, as the policy writes it.
async fn limit_hit(store: &Store, account: &str, action: &str) {
    let now = Utc::now();
    store
        .audit(&outscore::store::AuditEntry {
            at: now,
            actor: "policy".into(),
            account: Some(account.into()),
            action: action.into(),
            detail: json!({"until": (now + chrono::Duration::minutes(20)).to_rfc3339()}),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_team_reviews_and_unblocks_in_chromium() {
    let db = sqlite().await;
    let store = db.store.clone();
    // A refused spam message, some accepted mail, and the account blocked.
    let mut spam = report(
        1,
        "bob@example.com",
        Utc::now() - chrono::Duration::minutes(5),
        11.0,
        Some("L-SPAM20"),
    );
    spam.report.symbols = vec![SymbolResult {
        name: "KEYWORD_PHARMA".into(),
        group: "keywords".into(),
        weight: 6.0,
        factor: 1.0,
        score: 6.0,
        evidence: vec![r#"keyword "viagra" in subject as "VIAGRA""#.into()],
    }];
    spam.report.message.subject = Some("Cheap VIAGRA for you".into());
    spam.content = b"From: bob@example.com\r\nTo: x@example.org\r\nSubject: Cheap VIAGRA for you\r\n\r\nOrder viagra today, no prescription.\r\n".to_vec();
    let spam_id = spam.id.to_string();
    let mut reports = vec![spam];
    for n in 10..14 {
        let mut ham = report(
            n,
            "carol@example.com",
            Utc::now() - chrono::Duration::minutes(n as i64),
            0.4,
            None,
        );
        ham.action = "accept".into();
        ham.report.message.subject = Some(format!("Quarterly figures {n}"));
        reports.push(ham);
    }
    // A message far over the line, and one just under it.
    let mut gtube = report(
        20,
        "dave@shop.example.net",
        Utc::now() - chrono::Duration::minutes(30),
        1000.0,
        Some("L-SPAM30"),
    );
    gtube.report.message.subject = Some("Test message".into());
    reports.push(gtube);
    let mut under = report(
        21,
        "bob@example.com",
        Utc::now() - chrono::Duration::minutes(40),
        14.2,
        None,
    );
    under.action = "accept".into();
    under.report.message.subject = Some("Invoice 2211".into());
    reports.push(under);
    store.insert_reports(&reports).await.unwrap();
    suspend(&store, "bob@example.com", &spam_id).await;
    limit_hit(&store, "jail@example.com", "prison").await;
    limit_hit(&store, "busy@example.com", "daily_limit").await;
    let salt = "browser-salt".to_string();
    db::put_user(
        &store,
        &UserRecord {
            name: "alice".into(),
            role: Role::Abuse,
            hash: hash_secret("s3cret", &salt, 10),
            salt,
            iterations: 10,
        },
    )
    .await
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let mut directory = outscore::policy::Directory::default();
    directory.insert(outscore::policy::AccountEntry {
        login: "erin@example.com".into(),
        ..Default::default()
    });
    let enforcer = crate::support::store::enforcer_for(&store, directory, Default::default());
    let data_dir = tempfile::tempdir().unwrap();
    let mut state = AppState::new(store.clone(), enforcer);
    state.reject_score = Some(std::sync::Arc::new(|| 15.0));
    state.learner = Some(std::sync::Arc::new(outscore::learn::Learner::new(
        store.clone(),
        data_dir.path(),
    )));
    let server = tokio::spawn(serve_on(state, listener, stop.clone()));
    let profile = tempfile::tempdir().unwrap();
    let Some(b) = browser(base, profile.path()).await else {
        stop.cancel();
        return;
    };

    // Log in.
    b.go("/history").await;
    assert!(
        b.url().await.ends_with("/login"),
        "not sent to the login page"
    );
    b.type_into("input[name=user]", "alice").await;
    b.type_into("input[name=password]", "s3cret").await;
    b.screenshot("01-login").await;
    b.click("button[type=submit]").await;
    b.wait_for("#history").await;
    assert!(b.url().await.ends_with("/history"));

    Box::pin(history_and_report(&b, &spam_id, data_dir.path())).await;
    Box::pin(abuse_page(&b, &store, &spam_id)).await;
    Box::pin(chart_and_accounts(&b)).await;

    b.quit().await;
    stop.cancel();
    let _ = server.await;
}

/// Mail history (filters, score order) and a report (learn as ham).
async fn history_and_report(b: &Browser, spam_id: &str, data_dir: &Path) {
    // Mail history: the refused message is there with its score, under
    // the reject line.
    assert_eq!(b.count("#history tbody tr").await, 7);
    assert_eq!(b.count("#history tr.refused").await, 2);
    let row = b.text("#history tr.refused").await;
    assert!(
        row.contains("Cheap VIAGRA for you") && row.contains("11.00") && row.contains("L-SPAM20"),
        "{row}"
    );
    assert!(b.text("#reject-line").await.contains("Refused at ≥ 15.00"));
    b.screenshot("02-mail-history").await;

    // A part of the account name and a plain date.
    let today = Utc::now().date_naive().to_string();
    b.type_into("input[name=account]", "BOB").await;
    b.type_into("input[name=since]", &today).await;
    b.click("form.filters button[type=submit]").await;
    b.wait_url(&format!("since={today}")).await;
    b.wait_for("#history").await;
    assert_eq!(b.count("#history tbody tr").await, 2);
    b.screenshot("02b-history-account-part-and-date").await;

    // Highest score first: the line between 1000 and 14.20.
    b.go("/history?sort=score").await;
    b.wait_for("#history").await;
    let rows = b.text("#history tbody").await;
    let (top, line, next) = (
        rows.find("1000.00").unwrap(),
        rows.find("refused at ≥ 15.00").expect("reject line row"),
        rows.find("14.20").unwrap(),
    );
    assert!(top < line && line < next, "{rows}");
    assert!(b.text("#score-order-note").await.contains("no next page"));
    b.screenshot("02c-history-by-score").await;

    // Bob's refused message opens from its score cell: the keyword symbol
    // and the keyword highlighted in the text.
    b.go("/history?account=bob%40example.com&exact=1").await;
    b.click("#history tr.refused td.score a").await;
    b.wait_for("#symbols").await;
    assert!(b.url().await.ends_with(&format!("/reports/{spam_id}")));
    assert!(b.text("#symbols").await.contains("KEYWORD_PHARMA"));
    let marked = b.text("#content mark").await;
    assert!(
        marked.eq_ignore_ascii_case("viagra"),
        "highlighted {marked:?}"
    );
    assert!(
        b.count("#content mark").await >= 2,
        "subject and body both marked"
    );
    b.screenshot("03-report").await;

    // Teach the classifier: mark it as ham, with a reason, and be told so
    // back on the report (post-redirect-get).
    b.type_into("#learn input[name=reason]", "checked with the customer")
        .await;
    b.click("#learn button[value=ham]").await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(
        flash.contains("Learned as ham") && flash.contains("spam probability"),
        "{flash}"
    );
    assert!(b.url().await.ends_with(&format!("/reports/{spam_id}")));
    assert!(data_dir.join(outscore::classifier::MODEL_FILE).exists());
    b.screenshot("03b-learned-as-ham").await;
}

/// Mail abuse: the block's report, the limits, unblock, the disabled unblock, lift.
async fn abuse_page(b: &Browser, store: &Store, spam_id: &str) {
    // Mail abuse: red; bob's block leads to its report; jail and busy are
    // held back by limits, with their end.
    b.go("/abuse").await;
    let status = b.text("#status").await;
    assert!(
        status.contains("1 account is blocked") && status.contains("2 accounts are held back"),
        "{status}"
    );
    assert!(b.text("#blocked").await.contains("bob@example.com"));
    assert_eq!(
        b.attr("#blocked a.report-id", "href").await.as_deref(),
        Some(format!("/reports/{spam_id}").as_str())
    );
    let limited = b.text("#limited").await;
    assert!(
        limited.contains("jail@example.com")
            && limited.contains("in prison")
            && limited.contains("busy@example.com")
            && limited.contains("daily limit reached"),
        "{limited}"
    );
    assert_eq!(b.count("#blocked button[value=lift]").await, 1);
    b.screenshot("04-mail-abuse-blocked").await;
    b.click("#blocked a.report-id").await;
    b.wait_for("#symbols").await;
    b.go("/abuse").await;

    // Unblock: back on Mail abuse with the outcome; a reload posts nothing.
    b.click("#blocked button[value=unblock]").await;
    b.wait_for("#flash").await;
    assert!(
        b.text("#flash").await.contains("unblock done"),
        "{}",
        b.text("#flash").await
    );
    assert!(b.url().await.ends_with("/abuse"));
    assert!(b.text("#status").await.contains("No account is blocked"));
    b.screenshot("05-unblocked").await;
    b.refresh().await;
    b.wait_for("#status").await;
    assert_eq!(
        b.count("#flash").await,
        0,
        "the reload showed the outcome again"
    );

    // He relapses: Unblock is disabled and says why; Lift instead.
    suspend(store, "bob@example.com", spam_id).await;
    b.go("/abuse").await;
    assert_eq!(b.count("#blocked button[value=unblock]").await, 0);
    assert!(b
        .attr("#blocked button.unblock", "disabled")
        .await
        .is_some());
    let why = b.text("#blocked .why").await;
    assert!(
        why.contains("90-day rule") && why.contains("not again before"),
        "{why}"
    );
    b.screenshot("06-unblock-disabled").await;
    b.type_into(
        "#blocked form[action$='/lift'] input[name=reason]",
        "customer cleaned the PC",
    )
    .await;
    b.click("#blocked button[value=lift]").await;
    b.wait_for("#flash").await;
    assert!(b.text("#flash").await.contains("lift done"));
    b.screenshot("06b-lifted").await;
    assert_eq!(
        store
            .account_state("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Active
    );
}

/// The chart, and Accounts: every mailbox, and a suspension.
async fn chart_and_accounts(b: &Browser) {
    // The chart renders.
    b.go("/chart").await;
    assert_eq!(b.count("svg polyline").await, 1);
    b.screenshot("07-chart").await;

    // Accounts: every mailbox (directory, traffic, limits); suspend carol.
    b.go("/accounts").await;
    let all = b.text("#accounts").await;
    for account in [
        "erin@example.com",
        "carol@example.com",
        "dave@shop.example.net",
        "jail@example.com",
    ] {
        assert!(all.contains(account), "{account} missing: {all}");
    }
    b.screenshot("08-accounts").await;
    let carol = "form[action='/accounts/carol@example.com/suspend']";
    b.type_into(&format!("{carol} input[name=reason]"), "phishing run")
        .await;
    b.click(&format!("{carol} option[value=L-SPAM40]")).await;
    b.click(&format!("{carol} button")).await;
    b.wait_for("#flash").await;
    assert!(b.text("#flash").await.contains("suspend done"));
    assert!(b.url().await.ends_with("/accounts"));
    assert!(b.text("#accounts tr.blocked").await.contains("L-SPAM40"));
    b.screenshot("09-accounts-suspended").await;
}
