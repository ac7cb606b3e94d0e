//! Versioned migrations of a service's own tables, portable across SQLite and PostgreSQL.
//!
//! Applied versions are recorded per service in `fanout_service_migrations`, so services sharing
//! one PostgreSQL database keep separate histories, and a later version can alter a table that
//! already holds data. All pending migrations run in one transaction: a failure applies none.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{AnyPool, Executor, Row};

use crate::ServiceError;

/// One step of a service's schema. Never edit a released migration: add the next version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Strictly increasing, from 1.
    pub version: i64,
    /// What it does, recorded with it.
    pub description: &'static str,
    /// Portable DDL (`BIGINT`, `TEXT`, `CREATE ... IF NOT EXISTS`), run in order.
    pub statements: &'static [&'static str],
}

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS fanout_service_migrations (
    service TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (service, version))";

/// Arbitrary constant naming the migration lock among the database's advisory locks: instances
/// starting together would otherwise race on `CREATE TABLE IF NOT EXISTS`, which is not atomic
/// on PostgreSQL.
const MIGRATION_LOCK: i64 = 0x00fa_5e41;

/// Applies the migrations of `service` that `pool`'s database has not seen; returns how many
/// ran.
pub async fn migrate(pool: &AnyPool, service: &str, migrations: &[Migration]) -> Result<usize, ServiceError> {
    let bookkeeping = |source| ServiceError::Database { service: service.to_owned(), source };
    if let Some(pair) = migrations.windows(2).find(|pair| pair[1].version <= pair[0].version) {
        return Err(ServiceError::Config(format!(
            "migrations of {service} are out of order: {} after {}",
            pair[1].version, pair[0].version
        )));
    }
    let postgres = pool.connect_options().database_url.scheme().starts_with("postgres");
    // SQLite: take the write lock at once, so a concurrent writer makes this wait rather than
    // fail halfway through.
    let mut tx = if postgres { pool.begin().await } else { pool.begin_with("BEGIN IMMEDIATE").await }
        .map_err(bookkeeping)?;
    if postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(bookkeeping)?;
    }
    tx.execute(BOOKKEEPING).await.map_err(bookkeeping)?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM fanout_service_migrations WHERE service = $1")
        .bind(service)
        .fetch_all(&mut *tx)
        .await
        .map_err(bookkeeping)?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()
        .map_err(bookkeeping)?;
    if let Some(newer) = applied.iter().filter(|v| !migrations.iter().any(|m| m.version == **v)).max() {
        // A newer build migrated this database; its tables may not be what this build expects.
        tracing::warn!(service, version = newer, "the database has a migration this build does not know");
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let mut ran = 0;
    for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let failed = |source| ServiceError::Migration {
            service: service.to_owned(),
            version: migration.version,
            description: migration.description.to_owned(),
            source,
        };
        for statement in migration.statements {
            tx.execute(*statement).await.map_err(failed)?;
        }
        sqlx::query(
            "INSERT INTO fanout_service_migrations (service, version, description, applied_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(service)
        .bind(migration.version)
        .bind(migration.description)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        tracing::info!(service, version = migration.version, description = migration.description, "migrated");
        ran += 1;
    }
    tx.commit().await.map_err(bookkeeping)?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use sqlx::any::AnyPoolOptions;

    use super::*;

    const V1: Migration = Migration {
        version: 1,
        description: "notes",
        statements: &["CREATE TABLE IF NOT EXISTS notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"],
    };
    const V2: Migration = Migration {
        version: 2,
        description: "notes.author",
        statements: &["ALTER TABLE notes ADD COLUMN author TEXT"],
    };
    const BROKEN: Migration = Migration {
        version: 3,
        description: "broken",
        statements: &["CREATE TABLE t (a BIGINT)", "NOT SQL"],
    };

    async fn pool(dir: &tempfile::TempDir) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("m.db").display());
        AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("sqlite opens")
    }

    #[tokio::test]
    async fn pending_versions_run_once_and_failures_apply_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir).await;
        assert_eq!(migrate(&pool, "notes", &[V1]).await.expect("v1"), 1);
        assert_eq!(migrate(&pool, "notes", &[V1]).await.expect("again"), 0);
        assert_eq!(migrate(&pool, "notes", &[V1, V2]).await.expect("v2"), 1);
        sqlx::query("INSERT INTO notes (id, body, author) VALUES (1, 'b', 'a')")
            .execute(&pool)
            .await
            .expect("v2's column exists");
        // Another service's history is its own.
        assert_eq!(
            migrate(&pool, "other", &[Migration { description: "other", ..V1 }]).await.expect("own"),
            1
        );

        let err = migrate(&pool, "notes", &[V1, V2, BROKEN]).await.expect_err("broken");
        assert!(err.to_string().contains("migration 3 of notes"), "{err}");
        let leftover = sqlx::query("SELECT name FROM sqlite_master WHERE name = 't'")
            .fetch_optional(&pool)
            .await
            .expect("queries");
        assert!(leftover.is_none(), "the failed migration's first statement was rolled back");

        let err = migrate(&pool, "notes", &[V2, V1]).await.expect_err("order");
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
