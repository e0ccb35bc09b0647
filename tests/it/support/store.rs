//! Shared by the store test binaries: open a fresh SQLite file or a fresh
//! PostgreSQL schema, and build reports.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outscore::envelope::{Client, Envelope, Family};
use outscore::scoring::{MessageSummary, ScanReport, SymbolResult, Timings};
use outscore::store::{ReportId, Store, StoreOptions, StoredReport};

/// The PostgreSQL the tests use (trust auth on loopback); the
/// `OUTSCORE_TEST_PG_URL` environment variable overrides it.
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_admin_url() -> String {
    std::env::var("OUTSCORE_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_string())
}

/// Set to 1 (as `scripts/test` does) to make an unreachable PostgreSQL a
/// failure instead of a skipped backend.
pub const REQUIRE_PG: &str = "OUTSCORE_REQUIRE_POSTGRES";

static SKIP_NOTICE: Once = Once::new();

/// Say it where it cannot be captured: straight to the process's stderr.
pub fn plain_notice(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

pub fn options() -> StoreOptions {
    StoreOptions {
        acquire_timeout: Duration::from_secs(3),
        ..StoreOptions::default()
    }
}

pub struct SqliteDb {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub store: Store,
}

pub async fn sqlite_with(options: StoreOptions) -> SqliteDb {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: open must create it.
    let url = format!("sqlite://{}", dir.path().join("data/outscore.db").display());
    let store = Store::connect(&url, options).await.unwrap();
    SqliteDb { dir, url, store }
}

pub async fn sqlite() -> SqliteDb {
    sqlite_with(options()).await
}

/// A fresh schema in the test database; dropped by `drop_schema`.
pub struct PgDb {
    pub schema: String,
    pub url: String,
    pub store: Store,
}

impl PgDb {
    /// Another store on the same schema, as a second relay would have.
    pub async fn second(&self) -> Store {
        Store::connect(&self.url, options()).await.unwrap()
    }

    pub async fn drop_schema(self) {
        self.store.close().await;
        if let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            pool.close().await;
        }
    }
}

/// `None` (after saying so plainly) when PostgreSQL cannot be reached and
/// `OUTSCORE_REQUIRE_POSTGRES` is not set.
pub async fn postgres_with(options: StoreOptions) -> Option<PgDb> {
    let admin_url = pg_admin_url();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&admin_url)
        .await;
    let admin = match admin {
        Ok(pool) => pool,
        Err(e) => {
            if std::env::var(REQUIRE_PG).is_ok_and(|v| v == "1") {
                panic!(
                    "PostgreSQL at {admin_url} is required ({REQUIRE_PG}=1) but unreachable: {e}"
                );
            }
            SKIP_NOTICE.call_once(|| {
                plain_notice(&format!(
                    "NOTE: PostgreSQL at {admin_url} is unreachable ({e}): \
                     the PostgreSQL store tests did NOT run (only SQLite was tested)."
                ))
            });
            return None;
        }
    };
    let schema = format!("outscore_t_{}", ReportId::random());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = format!("{admin_url}?options[search_path]={schema}");
    let store = Store::connect(&url, options).await.unwrap();
    Some(PgDb { schema, url, store })
}

pub async fn postgres() -> Option<PgDb> {
    postgres_with(options()).await
}

/// A report with recognisable fields.
pub fn report(
    n: usize,
    account: &str,
    at: DateTime<Utc>,
    score: f64,
    tier: Option<&str>,
) -> StoredReport {
    let envelope = Envelope {
        client: Client {
            hostname: "client.example.net".into(),
            family: Family::Inet,
            addr: Some("192.0.2.7".parse::<IpAddr>().unwrap()),
            port: 40000,
            helo: Some("pc".into()),
        },
        auth_login: Some(account.to_string()),
        auth_type: Some("PLAIN".into()),
        mail_from: account.to_string(),
        rcpts: vec![
            format!("rcpt{}@example.org", n % 5),
            "Shared@Example.org".into(),
        ],
        queue_id: Some(format!("Q{n:06}")),
        ..Envelope::default()
    };
    let report = ScanReport {
        score,
        symbols: vec![SymbolResult {
            name: "KEYWORD_SPAM".into(),
            group: "keywords".into(),
            weight: 3.0,
            factor: 1.0,
            score,
            evidence: vec![format!("keyword 'viagra' in Subject (report {n})")],
        }],
        message: MessageSummary {
            size: 1000,
            subject: Some(format!("subject {n}")),
            from: Some(account.to_string()),
            to: vec!["rcpt@example.org".into()],
            message_id: Some(format!("msg{n}@example.com")),
            date: Some("Sun, 22 Nov 2026 18:00:00 +0000".into()),
            ..MessageSummary::default()
        },
        timings: Timings {
            parse_us: 10,
            rules_us: 20,
            total_us: 30,
        },
        skipped: None,
    };
    let mut content = format!("Subject: subject {n}\r\n\r\n").into_bytes();
    // Binary-safe and compressible content of about 10 KB.
    content.extend((0..10_000u32).map(|i| (i % 251) as u8));
    let mut r = StoredReport::new(
        envelope,
        report,
        tier.map(str::to_string),
        "reject",
        content,
    );
    r.created_at = at;
    r
}

/// Runs `$name(&Store)` once per backend: SQLite always, PostgreSQL when it
/// is reachable (see [`postgres`]). Available to every test module (`#[macro_use]` on `support`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::sqlite().await;
                super::$name(&db.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = super::postgres().await else { return };
                super::$name(&db.store).await;
                db.drop_schema().await;
            }
        }
    )*};
}

/// The policy service over `store` with the built-in tiers, default limits,
/// `directory` and `notify`: what the daemon hands the pipeline and the
/// review interface.
pub fn enforcer_for(
    store: &Store,
    directory: outscore::policy::Directory,
    notify: outscore::config::NotifyConfig,
) -> std::sync::Arc<outscore::pipeline::StoreEnforcer> {
    use std::sync::Arc;
    let policy = outscore::policy::Policy::new(
        outscore::policy::TierTable::builtin(),
        outscore::config::LimitsConfig::default(),
        &outscore::config::AccountsConfig::default(),
        directory,
    );
    let notifier = outscore::notify::Notifier::new(notify, 90).unwrap();
    Arc::new(outscore::policy::service::Enforcer::new(
        Arc::new(policy),
        store.clone(),
        store.clone(),
        outscore::notify::EventQueue::new(Arc::new(store.clone()), Arc::new(notifier)),
    ))
}

/// [`enforcer_for`] with an empty directory and no notification channel.
pub fn default_enforcer(store: &Store) -> std::sync::Arc<outscore::pipeline::StoreEnforcer> {
    enforcer_for(store, Default::default(), Default::default())
}
