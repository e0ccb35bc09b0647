//! The SQLite backend: one file (WAL, created if missing), the embedded
//! default for a single relay. The SQL itself lives in `backend`.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, StoreOptions};

/// Reports and state in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    options: StoreOptions,
}

impl SqliteStore {
    /// Open (creating the file and its directory if missing) and migrate.
    pub async fn open(url: &str, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore::open_lazy(url, options)?;
        // Connect now so a bad path is reported here.
        store
            .pool
            .acquire()
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connections are opened on first use; no migrations run.
    pub fn open_lazy(url: &str, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout);
        if let Some(dir) = connect.get_filename().parent() {
            if !dir.as_os_str().is_empty() && !Path::new(dir).exists() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(SqliteStore { pool, options })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }
}

mod sql {
    use super::SqliteStore;
    crate::store::backend::sql_store!(SqliteStore, sqlx::Sqlite);
}
