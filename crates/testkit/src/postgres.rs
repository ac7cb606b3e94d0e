use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection};

use crate::{unique_name, TestkitError, DEFAULT_DATABASE_URL};

/// A handle on the test PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Postgres {
    options: PgConnectOptions,
}

impl Postgres {
    /// Connects to the server at `FANOUT_TEST_DATABASE_URL` (default
    /// `postgres://fanout:fanout@127.0.0.1:5432/fanout`), failing with
    /// [`TestkitError::PostgresUnavailable`] when it does not answer.
    pub async fn connect() -> Result<Self, TestkitError> {
        let url =
            std::env::var("FANOUT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let unavailable = |reason: String| TestkitError::PostgresUnavailable {
            url: fanout_config::redact_url(&url),
            reason,
        };
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| unavailable(e.to_string()))?;
        let mut conn = options.connect().await.map_err(|e| unavailable(e.to_string()))?;
        conn.ping().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(Self { options })
    }

    /// Creates an empty database with a unique name; it is dropped when the guard drops.
    pub async fn database(&self) -> Result<TestDatabase, TestkitError> {
        let name = unique_name("db").replace('-', "_");
        let mut conn = self.options.connect().await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
        let options = self.options.clone().database(&name);
        Ok(TestDatabase { name, admin: self.options.clone(), options })
    }
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin: PgConnectOptions,
    options: PgConnectOptions,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connect options for the database.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// A connection URL for the database, for code configured by URL.
    pub fn url(&self) -> String {
        self.options.to_url_lossy().to_string()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                let dropped = runtime.block_on(async {
                    let mut conn = admin.connect().await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                });
                if let Err(e) = dropped {
                    eprintln!("testkit: could not drop database {name}: {e}");
                }
            }
        });
        let _ = cleanup.join();
    }
}
