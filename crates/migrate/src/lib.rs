//! The one way Fanout creates and changes tables: sqlx's [`migrate!`](sqlx::migrate!) over
//! versioned SQL files kept in the crate that owns the tables, applied at startup by [`apply`].
//!
//! A crate's files are `migrations/<version>_<what>.sql`, or `migrations/{sqlite,postgres}/`
//! where the SQL must differ per backend. A released file is never edited (sqlx refuses a file
//! whose checksum changed under an applied version): a change is the next file. `migrate!` embeds
//! the files at compile time but cannot tell cargo about a new one, so each such crate has a
//! `build.rs` printing `cargo:rerun-if-changed=migrations`.
//!
//! # Several components in one database
//!
//! The consumer runtime's tables, a service's own tables and the outbox may all live in one
//! database. sqlx 0.8 records what it applied in one `_sqlx_migrations` table per database, keyed
//! by version alone, and cannot give each component a table of its own (a per-migrator table name
//! comes after 0.8). Separate schemas per component would need a search path per component, which
//! SQLite does not have and which one handler transaction, writing the service's tables and the
//! runtime's together, cannot switch. So each component numbers its migrations in a block of
//! versions of its own: version = block × [`BLOCK_SIZE`] + n, n from 1 (`10001_...` is the first
//! migration of block 1, `1010001_...` the first of block 101). [`apply`] refuses files outside
//! the component's [`Blocks`] or spread over two blocks, leaves the rows of other blocks alone,
//! and warns about a row in its own block it does not know (a newer build migrated the database).
//! Two components that picked the same block do not pass silently either: sqlx refuses the second
//! one's different file under the version the first applied.
//!
//! | block | owner |
//! |---|---|
//! | [`CONSUMER_BLOCK`] (1) | the consumer runtime: dedupe marks and parked keys |
//! | [`OUTBOX_BLOCK`] (2) | the producer's outbox |
//! | [`GATEWAY_BLOCK`] (3) | the callback gateway's dedupe store |
//! | 4 to 99 | reserved for the platform |
//! | 101, 102, 103 | the rewards, pinning and stats services |
//! | 104 | `examples/audit`, README's "Add a consumer", run by `tests/fanout_e2e.rs` |
//! | 105 | what `fanout new consumer` takes unless told `--block N` |
//! | [`SERVICE_BLOCKS`] (100 on) | a new service: take the next free block and add it here |
//!
//! # Instances starting together
//!
//! [`apply`] takes sqlx's migration lock, the one `Migrator::run` takes: on PostgreSQL a session
//! advisory lock (`pg_advisory_lock`, keyed by the database's name), held from before
//! `_sqlx_migrations` is created until after the last migration. Instances and components
//! starting together on one database therefore take turns, and each migration runs once, in one
//! transaction with its bookkeeping row. A run that fails stops without releasing the lock, so
//! [`apply`] closes its connection then rather than return it to the pool still holding it.
//! SQLite has no such lock: a SQLite store serves one instance.
//!
//! # Databases created before versioning
//!
//! Each component's first migration creates its tables with `IF NOT EXISTS`, so a database
//! created by the unversioned code that came before is adopted as it is. That code's bookkeeping
//! of services' tables, `fanout_service_migrations`, stays behind unread: it may be dropped.
#![warn(missing_docs)]

use std::{fmt, ops::RangeFrom};

use sqlx::{
    migrate::{Migrate, MigrateError, Migrator},
    Database, Pool,
};

/// How many versions one block holds.
pub const BLOCK_SIZE: i64 = 10_000;
/// The consumer runtime's block (`crates/consumer/migrations`).
pub const CONSUMER_BLOCK: i64 = 1;
/// The outbox's block (`crates/producer/migrations`).
pub const OUTBOX_BLOCK: i64 = 2;
/// The callback gateway's block (`crates/gateway/migrations`).
pub const GATEWAY_BLOCK: i64 = 3;
/// The blocks services number their own tables' migrations in, one block per service.
pub const SERVICE_BLOCKS: RangeFrom<i64> = 100..;

/// The version blocks a component may number its migrations in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// Exactly this block: a platform component's, fixed in the table above.
    Only(i64),
    /// Any one block of [`SERVICE_BLOCKS`]: a service's, chosen by its team.
    Service,
}

impl Blocks {
    fn allows(self, block: i64) -> bool {
        match self {
            Self::Only(only) => block == only,
            Self::Service => SERVICE_BLOCKS.contains(&block),
        }
    }
}

impl fmt::Display for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Only(block) => {
                write!(
                    f,
                    "block {block}: versions {} to {}",
                    block * BLOCK_SIZE + 1,
                    (block + 1) * BLOCK_SIZE - 1
                )
            }
            Self::Service => write!(
                f,
                "one block from {} on: versions from {}",
                SERVICE_BLOCKS.start,
                SERVICE_BLOCKS.start * BLOCK_SIZE + 1
            ),
        }
    }
}

/// Why a component's tables could not be migrated.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A migration file's version lies outside the component's blocks, or the files spread over
    /// two blocks: in a shared database it could collide with another component's. Nothing was
    /// applied.
    #[error("migration {version} of {component} is numbered outside its {allowed}")]
    Numbering {
        /// The component, e.g. a service's name.
        component: String,
        /// The offending version.
        version: i64,
        /// The versions the component may use.
        allowed: String,
    },
    /// The database could not be reached, or a migration failed (it was rolled back; the ones
    /// before it stay applied).
    #[error("migrating the tables of {component}")]
    Failed {
        /// The component, e.g. a service's name.
        component: String,
        /// sqlx's error, naming the migration that failed.
        #[source]
        source: MigrateError,
    },
}

fanout_core::debug_as_report!(MigrationError);

/// Applies the migrations of `migrator` that the database of `pool` has not seen, as
/// `component` (named in errors and logs), whose versions must lie in one block of `blocks`.
///
/// ```no_run
/// # async fn example(pool: sqlx::SqlitePool) -> Result<(), fanout_migrate::MigrationError> {
/// use fanout_migrate::{apply, Blocks};
///
/// // A service's crate has `sqlx::migrate!()`: its `migrations/` folder, embedded.
/// static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/notes");
///
/// apply(&pool, "notes", Blocks::Service, &MIGRATIONS).await
/// # }
/// ```
pub async fn apply<DB>(
    pool: &Pool<DB>,
    component: &str,
    blocks: Blocks,
    migrator: &Migrator,
) -> Result<(), MigrationError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let Some(block) = block_of(component, blocks, migrator)? else {
        return Ok(());
    };
    let failed = |source| MigrationError::Failed { component: component.to_owned(), source };
    let mut conn = pool.acquire().await.map_err(|e| failed(e.into()))?;
    if let Err(error) = run(&mut *conn, component, block, migrator).await {
        conn.close_on_drop();
        return Err(failed(error));
    }
    Ok(())
}

/// sqlx's `Migrator::run` with one difference: rows of other blocks are another component's,
/// not missing files. (`Migrator::set_ignore_missing` would also hide this component's own
/// unknown rows, and `run` on a pooled connection cannot be awaited in a spawned task: sqlx's
/// `Acquire` is "not general enough" there.)
async fn run<C: Migrate>(
    conn: &mut C,
    component: &str,
    block: i64,
    migrator: &Migrator,
) -> Result<(), MigrateError> {
    conn.lock().await?;
    conn.ensure_migrations_table().await?;
    if let Some(version) = conn.dirty_version().await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied = conn.list_applied_migrations().await?;
    for unknown in
        applied.iter().filter(|a| a.version / BLOCK_SIZE == block && !migrator.version_exists(a.version))
    {
        // Its tables may not be what this build expects.
        tracing::warn!(component, version = unknown.version, "the database has a migration of this component that this build does not know (a newer build migrated it)");
    }
    for migration in migrator.iter().filter(|m| !m.migration_type.is_down_migration()) {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(done) if done.checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                conn.apply(migration).await?;
                tracing::info!(component, version = migration.version, description = %migration.description, "migrated");
            }
        }
    }
    conn.unlock().await
}

/// The one block of `blocks` that all of `migrator`'s versions lie in; `None` when it has none.
fn block_of(component: &str, blocks: Blocks, migrator: &Migrator) -> Result<Option<i64>, MigrationError> {
    let mut block = None;
    for version in migrator.iter().map(|m| m.version) {
        let this = version / BLOCK_SIZE;
        let numbered = version > 0 && version % BLOCK_SIZE != 0 && blocks.allows(this);
        if !numbered || block.is_some_and(|block| block != this) {
            return Err(MigrationError::Numbering {
                component: component.to_owned(),
                version,
                allowed: blocks.to_string(),
            });
        }
        block = Some(this);
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_lie_in_one_allowed_block() {
        let notes = sqlx::migrate!("tests/migrations/notes");
        assert_eq!(block_of("notes", Blocks::Service, &notes).ok(), Some(Some(901)));
        assert!(block_of("notes", Blocks::Only(CONSUMER_BLOCK), &notes).is_err());

        let straddling = sqlx::migrate!("tests/migrations/straddling");
        let err = block_of("s", Blocks::Service, &straddling).expect_err("two blocks");
        assert_eq!(
            err.to_string(),
            "migration 9050001 of s is numbered outside its one block from 100 on: versions from 1000001"
        );

        let unblocked = sqlx::migrate!("tests/migrations/unblocked");
        let err = block_of("u", Blocks::Service, &unblocked).expect_err("version 1 is the consumer's block");
        assert!(matches!(err, MigrationError::Numbering { version: 1, .. }), "{err}");
        assert_eq!(Blocks::Only(1).to_string(), "block 1: versions 10001 to 19999");
    }
}
