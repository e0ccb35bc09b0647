//! The PostgreSQL backend, for several relays sharing reports, account state
//! and counters. The SQL itself lives in `backend`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{StoreError, StoreOptions};

/// Reports and state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    options: StoreOptions,
}

impl PgStore {
    /// Connect and migrate. The URL may pick a schema with
    /// `?options[search_path]=name`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<PgStore, StoreError> {
        let store = PgStore::open_lazy(url, options)?;
        store
            .pool
            .acquire()
            .await
            .map_err(|source| StoreError::Open {
                url: redact(url),
                source,
            })?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connections are opened on first use; no migrations run.
    pub fn open_lazy(url: &str, options: StoreOptions) -> Result<PgStore, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
            url: redact(url),
            source,
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(PgStore { pool, options })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

mod sql {
    use super::PgStore;
    crate::store::backend::sql_store!(PgStore, sqlx::Postgres);
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
